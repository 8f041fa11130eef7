"""Dataset file formats: WIDER FACE, FDDB, PASCAL VOC XML, image sizes (no torch)."""
