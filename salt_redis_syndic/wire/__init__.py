"""Records that cross Redis: their codec, signatures on the wire, and the checks they pass on the way in."""
