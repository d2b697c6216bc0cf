"""Runtime facades: the TT-NN model (``tt_model.TtModel``) and its torch reference (``reference_model.ReferenceModel``)."""
