//! Kernel modules: modules.dep order, parameters passed to finit_module (to be written).
