"""Page-cache state shared by every design: pages and the radix tree of slot words."""
