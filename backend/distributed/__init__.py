"""Scale-out mode: job state shared by API and worker processes through Redis."""
