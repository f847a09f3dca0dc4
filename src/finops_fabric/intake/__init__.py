"""What arrives from outside, read strictly: transactions (files and request bodies) and any
JSON body the daemon accepts.

- :mod:`.strict_json`: the strict JSON reader (size and nesting limits, no duplicate keys,
  lone surrogates, NaN/Infinity or numbers beyond ±(2**53 - 1)), located errors
- :mod:`.transaction`: a transaction is one such JSON object with a string id (or none)
"""
