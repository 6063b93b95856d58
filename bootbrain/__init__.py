"""bootbrain: decides what every PXE-booting bare-metal server boots. The README's
"Development" section maps the modules and the layers they form."""
