"""The Group Sampling face detector (Ming et al., CVPR 2019) in PyTorch."""
