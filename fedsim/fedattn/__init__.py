"""The FedAttn math: who holds which tokens, which blocks sync, the prefill and decode in torch, their costs
in closed form, and how far a run is from centralized inference."""
