"""End-to-end jobs over the library stages (the main jobs behind ``make demo``)."""
