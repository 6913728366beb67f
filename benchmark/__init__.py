"""deblurbench: data, training, metrics, timing and the CLI of the MSR2B reproduction suite."""

__version__ = "0.1.0"
