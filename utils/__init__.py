"""Everything around the model: the loss and metrics, data, the engine, reporting and the applications."""
