"""Official evaluation protocols: WIDER FACE AP and FDDB ROC (no torch)."""
