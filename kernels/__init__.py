"""Running code: kernel pool, leases, execution, environments and script conventions.

This package imports none of flows/, widgets/ or studio/, and its `__init__` imports
nothing, because the kernel-side modules are imported inside kernels whose environment
may hold nothing but the standard library and ipykernel.
"""
