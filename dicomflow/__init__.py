"""dicomflow core: settings, events, header sniffing, the import planner, adapters and the flows."""
