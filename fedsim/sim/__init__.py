"""The discrete-event engine: devices and links as SimPy entities, topologies, profiles and traces; it drives
the FedAttn math block by block through a protocol and never imports torch."""
