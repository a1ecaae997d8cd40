/* placeholder: the kiosk helper writes the page */
