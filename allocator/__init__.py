"""The ClusterIP allocator: unique Service VIPs from CIDR ranges, with an ordered event feed."""

__version__ = "0.1.0"
