"""MSC trial tracker: new and changed mesenchymal stem cell trials and papers, every morning."""

__version__ = "0.1.0"
