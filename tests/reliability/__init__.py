"""The randomized isolation suite: its generator, its harness and the tests running them."""
