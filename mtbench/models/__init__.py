"""Built-in architectures and the blocks (backbones, necks, heads) they share."""
