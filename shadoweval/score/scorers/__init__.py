"""Built-in scorers, one module per family; each registers its factories by name."""
