"""The real FedAttn runtime: one OS process per participant exchanging K/V over torch.distributed (gloo), its
launcher, emulated links in a network namespace, and the calibration the simulator is validated with."""
