SET LOCAL ROLE mlops_reader
