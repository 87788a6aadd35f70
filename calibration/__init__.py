"""Multiview camera calibration (ChArUco boards, intrinsics, extrinsics, bundle adjustment)."""
