"""Language side: units and lexicons, n-gram LMs, decoding graphs."""
