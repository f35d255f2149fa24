"""The flow room: a flow's coordinates and what maps them to the system's Cartesian positions."""
