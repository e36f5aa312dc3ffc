//! p2law-kernels: CubeCL compute kernels for pruning on wgpu, each beside its CPU reference. Filled by the kernels issue.
