"""fedsim: a discrete-event simulator of Federated Attention (FedAttn) over edge networks.

Data flows top to bottom:
scenario (YAML) -> config (validated) -> model + partition -> FedAttn math <-> SimPy engine
-> records -> results/ -> plots
"""

__version__ = "0.1.0"
