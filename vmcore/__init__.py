"""vmcore: the kdump kernel side and the dump inspection / conversion tool (see issues 5, 6)."""
