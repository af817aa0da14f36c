"""Start-up: the command line, kernel specs, and a kernel process from connection file to exit.

``cli`` parses the command line and writes kernel specs (``kernelspec``); ``launch`` binds the
transport, makes the kernel and hands it to a host loop; ``parent_poller`` ends an orphaned
kernel; ``children`` ends what the cells started when the kernel stops.
"""
