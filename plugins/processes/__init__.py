"""Built-in forward processes."""
