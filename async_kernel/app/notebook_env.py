"""What libraries look for to learn they run in a Jupyter kernel with a rich frontend.

tqdm's ``tqdm.auto`` (``tqdm.autonotebook``) picks its widget bar only when the module
``ipykernel.zmqshell`` is loaded (``'ipykernel.zmqshell' in sys.modules``) and no
``QT_API``/``SPYDER*`` variable suggests a Qt console; other libraries ask whether the
shell's config has an ``IPKernelApp`` section.  Both questions mean "is this a Jupyter
kernel speaking ZMQ to a frontend?", and for this kernel the answer is yes, so the ZMQ
kernel (never the callback interface, whose host may not render widgets) answers it:

- ``sys.modules['ipykernel.zmqshell']`` is a small module of ours saying so, whose
  ``ZMQInteractiveShell`` is this kernel's shell class; a loaded real ipykernel module is
  never replaced, and ``import ipykernel`` still finds the real package (or nothing);
- the shell's config gets an ``IPKernelApp`` section holding the connection file, as
  ipykernel's command line puts it there.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["SHIM_NAME", "announce_jupyter_kernel"]

SHIM_NAME = "ipykernel.zmqshell"


def announce_jupyter_kernel(shell: InteractiveShell, connection_file: str | None) -> None:
    """Tell libraries (tqdm.auto first) that this process is a ZMQ Jupyter kernel."""
    if SHIM_NAME not in sys.modules:
        shim = ModuleType(
            SHIM_NAME,
            "Stand-in registered by async-kernel: this process is a Jupyter kernel whose shell "
            "talks to its frontend over ZMQ. ZMQInteractiveShell is that shell's class.",
        )
        vars(shim).update(ZMQInteractiveShell=type(shell), __async_kernel__=True)
        sys.modules[SHIM_NAME] = shim
    config = shell.config
    if "IPKernelApp" not in config:
        from traitlets.config import Config

        config["IPKernelApp"] = Config()
    # Set even when the profile's config made the section first (it always does): the
    # connection file is this kernel's fact, read by %connect_info and %qtconsole.
    if connection_file:
        config["IPKernelApp"]["connection_file"] = connection_file
