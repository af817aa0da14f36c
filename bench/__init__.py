"""Side-by-side benchmark of async-kernel against ipykernel and a do-nothing floor kernel."""
