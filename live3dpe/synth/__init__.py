"""live3dpe.synth: an offline 3D portrait world with ground truth (the teachers' stand-in).

person (sample_person) -> head (geometry) + texture (face albedo) -> render (image, depth
along the ray, mask, parts from any 25-value camera); styles (3D edits with phrasings);
expression (jaw, blinks, talking-head sequences); dataset (EG3D-layout writer and reader).
"""
