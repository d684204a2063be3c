"""What users run: the command line (:mod:`.cli`), the editor (:mod:`.editor`), folder batches (:mod:`.batch`),
the per-photo pipeline behind ``enhance``/``render`` (:mod:`.pipeline`) and Dask clusters (:mod:`.cluster`)."""
