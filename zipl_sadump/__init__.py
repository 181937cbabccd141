"""sadump: the stand-alone dump boot image builder and the two-stage dumper (see issue 4)."""
