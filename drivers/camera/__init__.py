"""Camera drivers: frames to a per-camera HDF5 frame file, a frame-index stream on LSL."""
