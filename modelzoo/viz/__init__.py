"""Looking inside models: feature maps, filters, training curves, the layer tree."""
