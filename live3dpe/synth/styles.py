"""Edit styles: 3D operations on a person's materials (and geometry where natural).

An edit changes the person, not an image, so the edited person can be rendered from
any camera: ground truth for the edited result exists at every view. Each style has 8
training phrasings and 5 held-out ones (the paper's protocol for unseen prompts), plus
`looks`: what the edit does to the person in plain words (colours, materials, features), also
trained on, so that a prompt describing the look rather than naming the style reaches it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from live3dpe.synth.person import Person


@dataclass(frozen=True)
class Style:
    """A named edit. `hair_only` styles may change nothing but hair pixels."""

    name: str
    train_phrases: tuple[str, ...]
    heldout_phrases: tuple[str, ...]
    edit: Callable[[Person], Person]
    looks: tuple[str, ...] = ()
    hair_only: bool = False

    @property
    def training_texts(self) -> tuple[str, ...]:
        """Every text stage 2 trains this style with: the phrasings, then the looks."""
        return (*self.train_phrases, *self.looks)

    def apply(self, person: Person) -> Person:
        return self.edit(person)


def _appearance(**changes) -> Callable[[Person], Person]:
    def edit(person: Person) -> Person:
        return person.replace(appearance=dataclasses.replace(person.appearance, **changes))

    return edit


def _lum(c) -> float:
    return float(np.dot(c, (0.3, 0.59, 0.11)))


def _shade_of(colour, person_colour, lo: float = 0.6, hi: float = 1.15) -> tuple[float, float, float]:
    """`colour` brightened or darkened with the person's own tone, so edits keep some identity."""
    k = np.clip(0.6 + _lum(person_colour), lo, hi)
    return tuple(np.clip(np.asarray(colour) * k, 0, 1).tolist())


def _material(colour, specular: float, metallic: float, shininess: float, veins: float = 0.0) -> Callable[[Person], Person]:
    """The whole bust in one material: statues have blank eyes and uniform hair."""

    def edit(person: Person) -> Person:
        c = np.asarray(colour)
        app = dataclasses.replace(
            person.appearance,
            skin=tuple(c), lips=tuple(c * 0.92), brows=tuple(c * 0.85), iris=tuple(c), sclera=tuple(c),
            lash=tuple(c * 0.7), hair=tuple(c * 0.9), cloth=tuple(c * 0.95), mouth=tuple(c * 0.4),
            skin_variation=0.015, blush=0.0, eye_socket=0.25, hair_streaks=0.12, blank_eyes=True,
            specular=specular, metallic=metallic, shininess=shininess, veins=veins,
        )  # fmt: skip
        return person.replace(appearance=app)

    return edit


def _zombie(person: Person) -> Person:
    a = person.appearance
    grey = _lum(a.hair)
    return person.replace(
        appearance=dataclasses.replace(
            a, skin=_shade_of((0.52, 0.62, 0.42), a.skin), lips=(0.32, 0.25, 0.3), brows=(0.15, 0.16, 0.12),
            sclera=(0.82, 0.8, 0.5), iris=(0.75, 0.75, 0.62), blush=0.0, eye_socket=0.7, skin_variation=0.14,
            hair=(grey * 0.7 + 0.1, grey * 0.7 + 0.1, grey * 0.6 + 0.08), mouth=(0.1, 0.05, 0.05),
        )  # fmt: skip
    )


def _blue(person: Person) -> Person:
    a = person.appearance
    return person.replace(
        appearance=dataclasses.replace(a, skin=_shade_of((0.2, 0.42, 0.85), a.skin), lips=(0.12, 0.16, 0.45), blush=0.0)
    )


def _vampire(person: Person) -> Person:
    a = person.appearance
    return person.replace(
        appearance=dataclasses.replace(
            a, skin=(0.93, 0.92, 0.9), lips=(0.45, 0.02, 0.08), iris=(0.8, 0.05, 0.05), eye_socket=0.35,
            blush=0.0, skin_variation=0.02, hair=(0.03, 0.03, 0.04), brows=(0.05, 0.05, 0.06),
        )  # fmt: skip
    )


def _clown(person: Person) -> Person:
    a, s = person.appearance, person.shape
    app = dataclasses.replace(
        a, skin=(0.97, 0.96, 0.95), face_paint="clown", blush=0.0, skin_variation=0.01, hair=(0.95, 0.4, 0.05),
        hair_streaks=0.35, prop=(0.92, 0.05, 0.05), specular=0.1,
    )  # fmt: skip
    shape = dataclasses.replace(s, nose_ball=1.3, hair_volume=s.hair_volume + 2.5, hair_thickness=s.hair_thickness + 1.0)
    return person.replace(appearance=app, shape=shape)


def _hair(colour) -> Callable[[Person], Person]:
    def edit(person: Person) -> Person:
        return person.replace(appearance=dataclasses.replace(person.appearance, hair=colour))

    return edit


_POP_PALETTE = ((0.12, 0.05, 0.35), (0.92, 0.1, 0.5), (1.0, 0.85, 0.1), (0.35, 0.9, 0.95))

STYLES: dict[str, Style] = {
    s.name: s
    for s in [
        Style(
            "golden_statue",
            ("turn him into a golden statue", "make it a gold statue", "a statue made of gold", "golden sculpture",
             "cast the person in solid gold", "make the face shiny gold metal", "as a gilded statue", "gold statue style"),
            ("transform into a statue of polished gold", "a bust sculpted from gold", "make them look like a gold figurine",
             "turn the portrait into gleaming gold", "the person as a golden monument"),
            _material((0.95, 0.72, 0.25), specular=0.7, metallic=1.0, shininess=30.0),
            looks=("yellow gold metal skin", "a shiny golden figure", "smooth gold all over the face and hair", "a gold metallic bust with blank eyes", "gleaming yellow metal", "the face covered in gold leaf"),
        ),
        Style(
            "bronze",
            ("turn into a bronze statue", "make it bronze", "a bronze bust", "cast in bronze",
             "bronze sculpture style", "make the skin bronze metal", "as an old bronze statue", "bronze figure"),
            ("transform the person into bronze", "a sculpture cast from bronze", "make them look like a bronze monument",
             "turn the face into dark bronze", "a museum bronze of this person"),
            _material((0.58, 0.37, 0.2), specular=0.45, metallic=1.0, shininess=18.0),
            looks=("brown metal skin", "a dark brown metallic statue", "coppery brown metal all over", "an aged brown metal bust with blank eyes", "a brownish bronze colour", "a copper coloured sculpture"),
        ),
        Style(
            "marble",
            ("turn into a marble statue", "make it white marble", "a marble bust", "carved from marble",
             "marble sculpture", "make the person look like marble stone", "as a greek marble statue", "marble style"),
            ("transform into a sculpture of veined marble", "a classical marble portrait bust", "make them out of polished marble",
             "turn the face into carved white stone", "the person as an antique marble statue"),
            _material((0.9, 0.89, 0.86), specular=0.2, metallic=0.0, shininess=12.0, veins=0.45),
            looks=("white stone skin", "a pale grey veined stone bust", "a statue of white stone with blank eyes", "colourless white stone", "grey veined white rock", "a plaster white sculpture"),
        ),
        Style(
            "zombie",
            ("turn into a zombie", "make him a zombie", "zombie face", "undead zombie",
             "make the person look like a zombie", "zombie makeup", "as a walking dead zombie", "zombify the face"),
            ("transform the person into a rotting zombie", "give them the look of the undead", "make the face a ghoulish zombie",
             "a horror movie zombie version", "turn this portrait into the living dead"),
            _zombie,
            looks=("sickly greenish skin", "a green grey face with dark eye sockets", "a decaying corpse", "pale green dead skin and yellowed eyes", "a ghoul with grey green flesh", "greenish undead flesh"),
        ),
        Style(
            "blue_skin",
            ("make the skin blue", "blue skin", "turn the face blue", "give him blue skin",
             "an alien with blue skin", "paint the skin blue", "blue skinned person", "make the person blue"),
            ("change the skin colour to deep blue", "give them bright blue skin like an avatar", "color the face blue",
             "turn the complexion blue", "a blue-skinned version of this person"),
            _blue,
            looks=("dark blue skin", "a blue face with dark blue lips", "skin the colour of the sky", "blue complexion", "cobalt blue skin tone", "a person with bright blue skin"),
        ),
        Style(
            "pale_vampire",
            ("turn into a vampire", "make him a pale vampire", "vampire face", "a pale vampire",
             "make the person look like a vampire", "vampire makeup", "as a gothic vampire", "vampire style"),
            ("transform into a pale bloodthirsty vampire", "give them the look of a dracula", "make the face ghostly pale with red eyes",
             "a vampire version of this portrait", "turn the person into a creature of the night"),
            _vampire,
            looks=("chalk white skin with dark red lips", "deathly pale face and black hair", "bloodless white skin", "a white faced creature with dark lips", "paper white complexion", "pale skin and blood red lips"),
        ),
        Style(
            "clown",
            ("turn into a clown", "make him a clown", "clown makeup", "a circus clown",
             "make the person look like a clown", "clown face paint", "as a funny clown", "clown style"),
            ("transform the person into a circus clown", "give them a red nose and clown makeup", "paint a clown face on them",
             "a clown version of this portrait", "make them look like a birthday party clown"),
            _clown,
            looks=("white face paint with a red nose", "a red ball nose and big orange hair", "white makeup and painted red smile", "a circus performer with orange curly hair", "face painted white with red accents", "bright orange wig and red nose"),
        ),
        Style(
            "pop_art",
            ("make it pop art", "pop art style", "in the style of andy warhol", "pop art portrait",
             "turn into pop art", "warhol style", "a pop art painting", "make it look like pop art"),
            ("render the portrait as bold pop art", "in the style of a sixties pop art print", "a warhol screen print of this person",
             "make it a colourful pop art poster", "turn the photo into a pop art piece"),
            _appearance(posterize=_POP_PALETTE),
            looks=("flat bold colours like a screen print", "a poster of few bright colours", "magenta yellow and cyan blocks of colour", "posterized comic colours", "a graphic print in flat vivid colours", "bold flat colour portrait"),
        ),
        Style(
            "neon",
            ("make it neon", "neon glow", "neon lights style", "a neon portrait",
             "turn into neon", "cyberpunk neon face", "glowing neon outline", "neon style"),
            ("make the person glow with neon light", "a synthwave neon version", "outline the face in glowing neon",
             "turn the portrait into a neon sign", "bathe them in cyberpunk neon"),
            _appearance(skin=(0.09, 0.08, 0.13), lips=(0.9, 0.1, 0.7), hair=(0.06, 0.05, 0.1), brows=(0.05, 0.05, 0.08),
                        cloth=(0.05, 0.05, 0.08), blush=0.0, rim=1.6, rim_color=(0.1, 0.95, 1.0)),  # fmt: skip
            looks=("glowing cyan outline on a dark face", "dark skin lit by electric blue light", "a glowing rim of neon light", "magenta lips and a cyan glow", "lit by glowing tubes of light", "electric glow around the face"),
        ),
        Style(
            "charcoal_sketch",
            ("make it a charcoal sketch", "charcoal drawing", "a pencil sketch", "sketch style",
             "turn into a charcoal drawing", "draw it in charcoal", "a black and white sketch", "charcoal portrait"),
            ("render the person as a hand-drawn charcoal sketch", "make it look like a graphite drawing", "a rough charcoal study of the face",
             "turn the portrait into a pencil drawing", "sketch this person in charcoal"),
            _appearance(sketch=1.0),
            looks=("black and white hand drawing", "grey pencil lines on paper", "a monochrome drawing", "a drawing in black and grey strokes", "shaded in graphite", "an uncoloured sketch"),
        ),
        Style(
            "grey_hair",
            ("make the hair grey", "grey hair", "give him grey hair", "silver hair",
             "turn the hair grey", "old grey hair", "make the hair silver", "grey haired"),
            ("change the hair colour to silver grey", "give them the grey hair of old age", "dye the hair grey",
             "make their hair go grey", "turn the hair to silver"),
            _hair((0.72, 0.72, 0.74)),
            looks=("silvery hair", "hair gone white and grey", "ash grey hair", "hair the colour of steel", "salt and pepper grey hair", "an old person's grey hair"),
            hair_only=True,
        ),
        Style(
            "red_hair",
            ("make the hair red", "red hair", "give him red hair", "ginger hair",
             "turn the hair red", "a redhead", "dye the hair red", "red haired"),
            ("change the hair colour to fiery red", "make them a ginger", "give them bright copper hair",
             "dye their hair red", "turn the hair colour to auburn red"),
            _hair((0.68, 0.16, 0.05)),
            looks=("rust red hair", "bright auburn hair", "orange red hair", "hair dyed crimson", "fiery ginger locks", "deep red hair colour"),
            hair_only=True,
        ),
    ]
}


def get_style(name: str) -> Style:
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"unknown style {name!r}; choose from {sorted(STYLES)}") from None

