"""Hand labels (written before any comparison with the classifier)."""
import json
import pathlib

U="unspecified"
def L(id, rel, cg=(), cs=(), og=(), pr=(), note=""):
    return {"id": id, "msc_relevant": rel, "condition_groups": list(cg), "cell_sources": list(cs),
            "origins": list(og), "products": list(pr), "note": note}
def M(id, cg, cs, og, pr=("cells",), note=""):
    return L(id, True, cg, cs, og, pr, note)
N = lambda id, note="": L(id, False, note=note)
labels = [
 M("NCT02223897", ["digestive"], ["umbilical_cord"], [U], note="ischemic-type biliary lesions (post liver transplant) -> digestive (hepatobiliary); huc-MSC origin not stated"),
 M("NCT00250302", ["bone"], [U], ["autologous"], note="acute distal tibial fracture (not non-union) still bone; MSC source not stated"),
 M("NCT01162915", ["neurological"], ["bone_marrow"], ["autologous"]),
 M("NCT01929434", ["neurological"], [U], [U], note="CSV fields say only 'stem cell injection'; registry brief summary states umbilical-cord MSC, so relevant; source/origin labelled from CSV fields"),
 M("NCT04489732", ["other"], ["bone_marrow"], ["autologous"], note="radiation-induced xerostomia (salivary gland) -> other"),
 M("NCT04653077", ["neurological"], [U], [U], note="title says cerebral palsy; condition field is 'Stem Cell Transplant Complications'"),
 M("NCT02116634", ["neurological"], [U], [U]),
 M("NCT04356300", ["other"], [U], [U], ["extracellular_vesicles"], note="multiple organ dysfunction after aortic dissection surgery -> other"),
 M("NCT04294290", ["neurological"], ["umbilical_cord"], [U], note="hCT-MSC = human cord tissue MSC; origin not stated in fields (Duke product is allogeneic)"),
 M("NCT02687646", ["gvhd"], ["adipose"], ["allogeneic"]),
 M("NCT01442129", ["cardiovascular"], [U], [U], note="mesenchymal precursor cells (Mesoblast MPC); source/origin not stated in fields (public: allogeneic BM)"),
 M("NCT00114452", ["cardiovascular"], [U], ["allogeneic"], note="Provacel = Osiris allogeneic hMSC product; source not stated in fields"),
 M("NCT01297218", ["neurological"], ["umbilical_cord"], ["allogeneic"], note="Alzheimer's -> neurological; cord-blood-derived MSC -> umbilical_cord; NEUROSTEM is allogeneic (public)"),
 M("NCT01958502", ["bone"], ["bone_marrow"], [U], note="cells from iliac wing -> bone marrow; autologous implied but not stated"),
 M("NCT04432467", ["other"], [U], ["autologous"], note="reproductive (endometritis, Asherman, tubal) -> other"),
 M("NCT03059355", ["metabolic"], ["umbilical_cord","bone_marrow"], [U], note="metabolic syndrome/endothelial dysfunction: metabolic chosen, arguably other (taxonomy metabolic = diabetes)"),
 M("NCT00877903", ["cardiovascular"], [U], ["allogeneic"], note="Prochymal = allogeneic BM-MSC product (origin public); source not stated"),
 M("NCT05131412", ["respiratory"], [U], [U], note="observational study of MSC treatment for pneumonia after HSCT; relevant (MSC is studied object)"),
 M("NCT03601416", ["respiratory"], [U], [U]),
 M("NCT02742844", ["skin_wound"], [U], [U], note="APZ2 = RHEACELL ABCB5+ dermal MSC (autologous first-in-human); nothing in CSV fields says MSC - relevance from product knowledge"),
 M("NCT01429012", ["bone"], [U], ["autologous"]),
 N("NCT01441128", "MET (mesenchymal-epithelial transition) inhibitors in NSCLC"),
 M("NCT05018767", ["other"], ["umbilical_cord"], ["allogeneic"], note="ageing frailty -> other"),
 M("NCT02755922", ["bone"], [U], ["autologous"]),
 N("NCT02127710", "MET inhibitor in renal cancer"),
 N("NCT04407039", "glioma imaging"),
 M("NCT03299413", ["digestive"], ["umbilical_cord"], [U]),
 N("NCT02579460", "epithelial-mesenchymal transition in Barrett's"),
 M("NCT02805855", ["osteoarthritis"], ["adipose"], ["autologous"]),
 M("NCT02833792", ["neurological"], [U], ["allogeneic"]),
 M("NCT02881489", ["neurological"], ["bone_marrow"], ["autologous"]),
 M("NCT03726255", ["digestive"], [U], [U], note="observational compassionate-use; perianal fistula"),
 M("NCT01946048", ["cardiovascular"], ["umbilical_cord"], [U]),
 M("NCT04815213", ["other"], ["bone_marrow"], ["autologous"], note="premature ovarian failure -> other"),
 M("NCT03397095", ["cardiovascular"], ["bone_marrow"], ["autologous"]),
 M("NCT00955669", ["cardiovascular","skin_wound"], [U], ["autologous"], note="diabetic critical limb ischaemia + foot ulcer; metabolic not added (wounds excluded, CLI is cardiovascular)"),
 M("NCT03166865", ["osteoarthritis"], ["umbilical_cord"], [U]),
 M("NCT01159899", ["osteoarthritis","sports_injury","bone"], ["bone_marrow"], [U], note="'bone marrow stem cells' for knee cartilage defects, ID 'MSC-AS3'; OCD -> sports_injury, osteonecrosis -> bone; relevance somewhat ambiguous"),
 M("NCT02034786", ["other"], ["adipose"], ["autologous"], note="aesthetic filler / lipodystrophy -> other; adipose tissue collection"),
 M("NCT02987413", ["neurological"], [U], ["autologous"]),
 M("NCT04919135", ["other"], ["umbilical_cord"], [U], note="frailty -> other"),
 M("NCT04493918", ["bone"], [U], [U], note="vertebral bone defect from spinal TB -> bone"),
 M("NCT04064983", ["neurological"], ["adipose"], ["autologous"], note="expanded access"),
 M("NCT04551443", ["cardiovascular"], ["umbilical_cord"], [U], note="Wharton's jelly MSC"),
 N("NCT04077099", "MET bispecific antibody NSCLC"),
 M("NCT04909892", ["respiratory"], ["adipose"], ["allogeneic"], note="post-COVID pulmonary"),
 M("NCT04313647", ["other"], [U], [U], ["extracellular_vesicles"], note="healthy volunteers (aerosol exosome tolerance) -> other; arguably respiratory context"),
 M("NCT02449005", ["bone"], ["bone_marrow"], ["autologous"], note="infrabony periodontal (alveolar bone) defects -> bone; arguably other (dental)"),
 M("NCT03259217", ["skin_wound"], [U], [U], note="diabetic foot ulcer -> skin_wound only"),
 N("NCT02331966", "phosphaturic mesenchymal tumours"),
 M("NCT02277145", ["respiratory"], ["umbilical_cord"], [U]),
 M("NCT01804153", ["other"], ["adipose"], [U], note="stress urinary incontinence -> other; adipose-derived expanded stem cells = ASC/MSC; autologous only in outcome text, not in labelled fields"),
 M("NCT02384018", ["metabolic","digestive"], [U], ["autologous"], note="islet autotransplant after pancreatectomy for chronic pancreatitis; pancreatitis -> digestive is a judgement call"),
 M("NCT04681118", ["neurological"], [U], ["autologous"], note="NurOwn MSC-NTF (BM-derived publicly, not stated)"),
 M("NCT04040348", ["neurological"], [U], ["allogeneic"]),
 M("NCT02336230", ["gvhd"], [U], ["allogeneic"], note="remestemcel-L allogeneic (public); source not stated"),
 M("NCT01443689", ["skin_wound"], ["umbilical_cord"], ["allogeneic"], note="one arm also cord blood MNC"),
 M("NCT04235296", ["skin_wound"], [U], [U], ["secretome"], note="conditioned-medium-derived factor"),
 M("NCT02165904", ["neurological"], ["bone_marrow"], ["autologous"]),
 M("NCT04326985", ["osteoarthritis"], [U], ["autologous"]),
]
sel = pathlib.Path(__file__).with_name("selected_ids.txt").read_text().split()
assert [l["id"] for l in labels] == sel, "order/ids mismatch"
with open(pathlib.Path(__file__).with_name("heldout_labels.jsonl"), "w") as f:
    f.writelines(json.dumps(l) + "\n" for l in labels)
print(len(labels), sum(l["msc_relevant"] for l in labels))
