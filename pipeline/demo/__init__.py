"""`mtdistill demo`: the paper's experiment on the synthetic world. config -> run (the stages) -> report."""
