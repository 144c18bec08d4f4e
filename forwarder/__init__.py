"""nsg-forwarder: Azure NSG and VNet flow logs to ECS, CEF and OCSF events, delivered at least once."""

__version__ = "0.1.0"
