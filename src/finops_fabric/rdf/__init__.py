"""RDF boundary: the only package that imports rdflib, pySHACL and pyoxigraph."""
