"""The command line and what it runs: inspect, view, bench; the .pth hook for readers."""
