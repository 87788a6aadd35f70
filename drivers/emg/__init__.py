"""Serial sEMG amplifiers: a byte transport (pyserial) kept apart from protocol parsers that turn
bytes into samples (Shimmer3 ExG, OpenBCI Cyton and Cyton+Daisy)."""
