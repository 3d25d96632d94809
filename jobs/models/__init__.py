"""Model families behind one contract (`contract`); `families` picks and checks them."""
