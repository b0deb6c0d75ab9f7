"""Control: the internal control listener, the vendor API listener, and the manhole."""
