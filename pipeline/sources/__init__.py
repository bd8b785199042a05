"""One module per source; each turns its raw input into `schema.Document`s without importing Beam."""
