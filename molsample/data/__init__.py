"""Files shipped with the package: ``models/`` holds pretrained, tilted models (``package:NAME``)."""
