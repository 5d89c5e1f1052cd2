"""Supply-chain audit of the locked dependencies (`python -m audit`)."""
