"""The runtime room: where and how a process runs. Devices (``devices``), the ranks of a
distributed run (``distributed``), CPU cores and torch threads (``threads``), progress bars
(``progress``) and the location of the shipped cards, presets and models (``resources``)."""
