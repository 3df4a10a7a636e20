"""ffnet: FFNet and the MetaMixer framework as plugins of each field's tools."""
__version__ = "0.1.0"
