// Operator module.
