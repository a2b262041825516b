"""The reference node agent: keeps the node's nftables in step with the event feed."""
